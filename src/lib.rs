pub fn x() {}
pub mod load;
