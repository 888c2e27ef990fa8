//! The Dockerfile front end: everything that turns Dockerfile text into a
//! checked, expanded build plan. No I/O beyond reading text handed in.
//!
//! Three steps, as in BuildKit: [`parser`] makes an untyped [`ast::Node`] list
//! with line spans; [`instructions`] makes typed commands grouped in stages;
//! [`plan`] works out which stages a target needs and in which order.
//! [`shell`] is the word-expansion lexer; [`ignore`] is `.dockerignore`.
#![deny(missing_docs)]

pub mod ast;
pub mod frontend;
pub mod go;
pub mod ignore;
pub mod instructions;
pub mod parser;
pub mod plan;
pub mod scope;
pub mod shell;

pub use frontend::{load, load_with, parse_onbuild_trigger, Dockerfile, LoadOptions};
pub use instructions::FrontendError;
