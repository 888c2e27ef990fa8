//! Test harness for kiln: real registries, test-made base images, an
//! independent image reader, and wrappers around peer tools.
//!
//! Nothing here uses kiln code: this crate is the independent check that
//! kiln's output is what other tools (skopeo, umoci, buildah) agree on.
//!
//! # Pieces
//! * [`Registry`]: the CNCF distribution registry (`docker-registry serve`)
//!   on a free 127.0.0.1 port, plain, TLS (fresh CA via rcgen) or with
//!   htpasswd auth; killed and deleted on drop.
//! * [`BaseImage`]: busybox images built by hand as OCI layouts (one layer,
//!   two layers with whiteouts, multi-arch index), and a debootstrapped
//!   Debian with Python cached once per machine; pushed with skopeo.
//! * [`Flattened`]: an image's final filesystem, computed with the tar crate
//!   from a layout or a registry, with every blob digest and diff_id
//!   checked; [`diff`] and [`normalized_config`] compare two images.
//! * Peer tools: [`skopeo_copy`], [`skopeo_inspect`], [`umoci_unpack`] and
//!   [`run_unpacked`] / [`run_pushed_image`] (run an image's entrypoint in a chroot),
//!   [`buildah_build`] / [`BuildahBuild`], [`docker_available`].
//! * Hostile fronts for a registry: [`FaultProxy`] (errors, drops, stalls,
//!   damaged bodies) and [`DowngradeFront`] (HTTPS that lures clients to
//!   plain HTTP on its own port and records what credentials arrive there).
//! * [`tools_check`]: one loud failure naming every missing tool.
//!
//! # Example
//! ```no_run
//! use kiln_testkit::{BaseImage, Flattened, Registry};
//!
//! let reg = Registry::plain()?;
//! let base = BaseImage::busybox()?.push_to(&reg, "busybox:latest")?;
//! // `base` is "127.0.0.1:PORT/busybox:latest": use it in a Dockerfile's FROM.
//! let image = Flattened::from_registry(&reg, "busybox:latest")?;
//! assert_eq!(image.get("/bin/sh").unwrap().link_target.as_deref(), Some("busybox"));
//! # let _ = base;
//! # anyhow::Ok(())
//! ```
//!
//! # buildah on this kind of machine
//! Running as root in a container without a Docker daemon, these work (see
//! the buildah module for why):
//! `buildah --root R --runroot RR --storage-driver vfs build --layers
//! --isolation chroot --tls-verify=false -f DOCKERFILE -t TAG CONTEXT`, then
//! `buildah push --tls-verify=false TAG oci:DIR:TAG`. Both `vfs` and
//! `overlay` storage drivers work; `vfs` is used. `RUN` steps work under
//! chroot isolation but leave [`BUILDAH_RUN_ARTIFACTS`] in their layer.
//!
//! # Environment
//! Needs `docker-registry`, `skopeo`, `umoci`, `buildah` and `busybox`
//! (Debian packages docker-registry, skopeo, umoci, buildah, busybox-static);
//! a missing tool is an error, never a silent skip. Registries listen only on
//! 127.0.0.1; every test's files live in temp dirs removed on drop.
#![deny(missing_docs)]

mod auth;
mod base_image;
mod buildah;
mod cmd;
mod config;
mod debian;
mod diff;
mod docker;
mod downgrade_front;
mod fault_proxy;
mod flatten;
mod foreign_busybox;
pub mod layout;
mod platform;
mod read_layout;
mod registry;
mod skopeo;
mod tls;
mod tools;
mod umoci;

pub use auth::Credentials;
pub use base_image::{
    add_busybox_rootfs, add_busybox_rootfs_of, BaseImage, BUSYBOX_PATH_ENV, LAYOUT_TAG,
};
pub use buildah::{
    buildah_build, BuildahBuild, BuildahImage, BUILDAH_RUN_ARTIFACTS, BUILDAH_STORAGE_DRIVER,
    BUILDAH_TIMEOUT,
};
pub use config::normalized_config;
pub use debian::{debian_mirror, DEBIAN_PACKAGES, DEBIAN_PATH_ENV, DEBIAN_SUITE};
pub use diff::diff;
pub use docker::{docker_available, require_docker};
pub use downgrade_front::{DowngradeFront, Lure, PlainRequest};
pub use fault_proxy::{Fault, FaultProxy, MAX_CONNECTIONS};
pub use flatten::{EntryInfo, EntryKind, Flattened, KEEP_CONTENT_UP_TO};
pub use foreign_busybox::busybox_static;
pub use platform::Platform;
pub use registry::{Registry, RegistryBuilder};
pub use skopeo::{
    skopeo_copy, skopeo_copy_with, skopeo_inspect, skopeo_inspect_for_platform, skopeo_inspect_raw,
    skopeo_inspect_with, Access, CopyOptions, InspectKind,
};
pub use tls::{generate as generate_tls, TlsFiles};
pub use tools::{find_in_path, tools_check, REQUIRED_TOOLS};
pub use umoci::{run_pushed_image, run_unpacked, umoci_unpack, unpack_pushed_image};
