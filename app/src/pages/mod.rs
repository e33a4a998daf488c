pub mod apps;
pub mod builds;
pub mod env;
pub mod not_found;
pub mod release;
pub mod releases;
