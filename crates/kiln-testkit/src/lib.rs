//! Test harness for kiln: real registries, test-made base images, an
//! independent image reader, and wrappers around peer tools.
//!
//! Nothing here uses kiln code: this crate is the independent check that
//! kiln's output is what other tools (skopeo, umoci, buildah) agree on.
#![deny(missing_docs)]

mod auth;
mod cmd;
mod registry;
mod tls;
mod tools;

pub use auth::Credentials;
pub use registry::{Registry, RegistryBuilder};
pub use tools::{find_in_path, tools_check, REQUIRED_TOOLS};
