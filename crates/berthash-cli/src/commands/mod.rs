pub mod export;
pub mod forward;
pub mod info;
