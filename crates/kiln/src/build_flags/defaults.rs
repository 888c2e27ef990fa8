//! Kaniko's defaults, which kiln keeps so that a Kaniko command line means the same.

use std::time::Duration;

/// Kaniko's default build context.
pub const DEFAULT_CONTEXT: &str = "/workspace/";
/// Kaniko's default Dockerfile name, relative to the context.
pub const DEFAULT_DOCKERFILE: &str = "Dockerfile";
/// Kaniko's default local cache directory.
pub const DEFAULT_CACHE_DIR: &str = "/cache";
/// Kaniko's working directory; used as kiln's when it exists and is writable.
pub const KANIKO_DIR: &str = "/kaniko";
/// Kaniko's default cache TTL: two weeks.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(336 * 3600);
