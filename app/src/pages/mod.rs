pub mod apps;
pub mod builds;
pub mod not_found;
pub mod release;
pub mod releases;
