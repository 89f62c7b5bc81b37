pub mod forward;
pub mod info;
