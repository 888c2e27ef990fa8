//! Test harness for kiln: real registries, test-made base images, an
//! independent image reader, and wrappers around peer tools.
//!
//! Nothing here uses kiln code: this crate is the independent check that
//! kiln's output is what other tools (skopeo, umoci, buildah) agree on.
#![deny(missing_docs)]

mod auth;
mod base_image;
mod buildah;
mod cmd;
mod config;
mod diff;
mod docker;
mod flatten;
pub mod layout;
mod platform;
mod read_layout;
mod registry;
mod skopeo;
mod tls;
mod tools;
mod umoci;

pub use auth::Credentials;
pub use base_image::{BaseImage, BUSYBOX_PATH_ENV, LAYOUT_TAG};
pub use buildah::{
    buildah_build, BuildahBuild, BuildahImage, BUILDAH_RUN_ARTIFACTS, BUILDAH_STORAGE_DRIVER,
};
pub use config::normalized_config;
pub use diff::diff;
pub use docker::docker_available;
pub use flatten::{EntryInfo, EntryKind, Flattened, KEEP_CONTENT_UP_TO};
pub use platform::Platform;
pub use registry::{Registry, RegistryBuilder};
pub use skopeo::{
    skopeo_copy, skopeo_copy_with, skopeo_inspect, skopeo_inspect_raw, skopeo_inspect_with, Access,
    CopyOptions, InspectKind,
};
pub use tools::{find_in_path, tools_check, REQUIRED_TOOLS};
pub use umoci::umoci_unpack;
