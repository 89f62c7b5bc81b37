//! Where the GPU backends keep what they learn about a device from one run to the next: the
//! kernels CUDA compiles (PTX, from NVRTC) and the choices CubeCL's autotuner makes (which
//! matrix-product and reduction kernel is fastest for each shape it meets). On a cold cache the
//! first steps of each new model size, batch and precision pay for both: minutes for nano on an
//! H100, where each matrix-product shape takes 25-45 s to tune.
//!
//! Left alone, CubeCL keeps autotune results under `target/` of the nearest Cargo project above
//! the working directory (else the user's cache directory) and compiles every kernel again in
//! each process. berthash sets one directory per device model instead, the same wherever it
//! runs from: `$BERTHASH_KERNEL_CACHE`, else `<user cache directory>/berthash/kernels`
//! (`~/.cache/berthash/kernels` on Linux), then `<backend>-<device>` below it, e.g.
//! `cuda-nvidia-h100-80gb-hbm3`. PTX is compiled for one GPU architecture, hence the device in
//! the path. wgpu's adapter is only known once its runtime has started, so wgpu's directory is
//! `wgpu` (wgpu uses the autotune results only). `BERTHASH_KERNEL_CACHE=off` leaves CubeCL's
//! defaults. CubeCL's other settings (`cubecl.toml`, the `CUBECL_*` variables) still apply.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The environment variable that moves the kernel cache (or, set to `off`, leaves it to CubeCL).
pub const ENV: &str = "BERTHASH_KERNEL_CACHE";

/// Sets CubeCL's kernel and autotune caches to the directory for `backend` on `device` (see the
/// module doc) and returns it. Call it before the backend's runtime starts: CubeCL reads its
/// configuration once per process. Returns `None`, leaving CubeCL's defaults, when the variable
/// says `off`, when no cache directory is known or can be created (with a warning), or when
/// CubeCL's configuration was already read.
pub fn configure(backend: &str, device: &str) -> Option<PathBuf> {
    use burn::cubecl::config::cache::CacheConfig;
    use burn::cubecl::config::{CubeClRuntimeConfig, RuntimeConfig};

    let dir = resolve(std::env::var_os(ENV), dirs::cache_dir(), backend, device)?;
    if let Err(err) = std::fs::create_dir_all(&dir) {
        tracing::warn!(
            "the kernel cache {} cannot be created ({err}): kernels are compiled again in each \
             run (set {ENV} to a writable directory)",
            dir.display()
        );
        return None;
    }
    let mut storage = CubeClRuntimeConfig::storage().lock();
    if storage.is_some() {
        return None;
    }
    // What CubeCL itself would read (cubecl.toml, CUBECL_*), with the two cache locations set.
    let mut config = CubeClRuntimeConfig::from_current_dir().override_from_env();
    config.autotune.cache = CacheConfig::File(dir.clone());
    config.compilation.cache = Some(CacheConfig::File(dir.clone()));
    *storage = Some(std::sync::Arc::new(config));
    Some(dir)
}

/// The cache directory for `backend` on `device`, from the variable's value and the user's
/// cache directory; `None` for `off` or where neither gives one.
fn resolve(
    env: Option<OsString>,
    user_cache: Option<PathBuf>,
    backend: &str,
    device: &str,
) -> Option<PathBuf> {
    let base = match env.filter(|v| !v.is_empty()) {
        Some(value) if value == "off" => return None,
        Some(value) => PathBuf::from(value),
        None => user_cache?.join("berthash").join("kernels"),
    };
    Some(base.join(format!("{backend}-{}", slug(device))))
}

/// A device name as one lower-case path segment: runs of characters other than ASCII letters
/// and digits become one `-`.
fn slug(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let out = out.trim_matches('-');
    if out.is_empty() {
        "device".into()
    } else {
        out.into()
    }
}

/// Whether `dir` holds anything yet (a cache that earlier runs filled).
pub fn is_filled(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_become_one_path_segment() {
        assert_eq!(slug("NVIDIA H100 80GB HBM3"), "nvidia-h100-80gb-hbm3");
        assert_eq!(
            slug("  NVIDIA H200 (MIG 1g.18gb) "),
            "nvidia-h200-mig-1g-18gb"
        );
        assert_eq!(slug("../.."), "device");
    }

    #[test]
    fn the_variable_moves_or_disables_the_cache() {
        let home = Some(PathBuf::from("/home/u/.cache"));
        assert_eq!(
            resolve(None, home.clone(), "cuda", "NVIDIA H100 80GB HBM3"),
            Some(PathBuf::from(
                "/home/u/.cache/berthash/kernels/cuda-nvidia-h100-80gb-hbm3"
            ))
        );
        assert_eq!(
            resolve(
                Some("/scratch/k".into()),
                home.clone(),
                "wgpu",
                "default-adapter"
            ),
            Some(PathBuf::from("/scratch/k/wgpu-default-adapter"))
        );
        assert_eq!(
            resolve(Some("".into()), home.clone(), "wgpu", "default-adapter"),
            Some(PathBuf::from(
                "/home/u/.cache/berthash/kernels/wgpu-default-adapter"
            ))
        );
        assert_eq!(resolve(Some("off".into()), home, "cuda", "x"), None);
        assert_eq!(resolve(None, None, "cuda", "x"), None);
    }
}
