pub mod dotenv;
pub mod interpolate;
