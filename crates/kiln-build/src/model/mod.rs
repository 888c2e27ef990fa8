//! The image under construction and the blobs it is made of: what the
//! engine builds and what the cache and the outputs read.
//!
//! This module sits below engine, cache and output so that those two can
//! use the image without reaching into the engine (which drives them).
//! It imports none of engine, cache, output, copy or context.

pub mod assemble;
pub mod blobs;
pub mod image;
