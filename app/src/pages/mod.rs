pub mod apps;
pub mod not_found;
pub mod releases;
