pub mod export;
pub mod fill_mask;
pub mod forward;
pub mod info;
pub mod plot;
pub mod pretrain;
pub mod tokenize;
