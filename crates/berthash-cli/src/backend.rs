//! The one place a Burn backend is chosen. Commands are written once, generic over the backend,
//! as a [`BackendTask`]; `run` instantiates them for the backend the user asked for.
//!
//! [`require`] checks that a backend can run on this machine before a command creates anything
//! (a run directory, its inputs): on a machine without an NVIDIA driver CubeCL's CUDA runtime
//! panics on its device thread, and the caller would otherwise see a `RecvError` panic after the
//! run directory was already written. The probe also names the device it found (logged once),
//! and warns when wgpu's adapter is a software one.

use berthash_kernels::TrainBackend;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendKind {
    /// Burn's pure-Rust CPU backend (flex), always available.
    Cpu,
    /// wgpu (Vulkan/Metal/DX12); needs a build with `--features wgpu`.
    Wgpu,
    /// CUDA; needs a build with `--features cuda` and an NVIDIA driver at run time.
    Cuda,
}

impl BackendKind {
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Cpu => "cpu",
            BackendKind::Wgpu => "wgpu",
            BackendKind::Cuda => "cuda",
        }
    }
}

/// A command body that runs on any autodiff backend.
pub trait BackendTask {
    type Output;
    fn run<B: TrainBackend>(self, device: B::Device) -> anyhow::Result<Self::Output>;
}

fn not_built(kind: BackendKind) -> anyhow::Error {
    anyhow::anyhow!(
        "this berthash was built without the {0} backend: rebuild with `cargo build --release --features {0}`",
        kind.name()
    )
}

pub fn run<T: BackendTask>(kind: BackendKind, task: T) -> anyhow::Result<T::Output> {
    use burn::backend::Autodiff;
    // The clean error instead of a panic for a command that has not checked yet; the first
    // probe's outcome is cached.
    require(kind)?;
    match kind {
        BackendKind::Cpu => task.run::<Autodiff<burn::backend::Flex>>(Default::default()),
        #[cfg(feature = "wgpu")]
        BackendKind::Wgpu => task.run::<Autodiff<burn::backend::Wgpu>>(Default::default()),
        #[cfg(feature = "cuda")]
        BackendKind::Cuda => task.run::<Autodiff<burn::backend::Cuda>>(Default::default()),
        #[allow(unreachable_patterns)]
        other => Err(not_built(other)),
    }
}

/// Runs `task` on wgpu's no-op device, which accepts every command and runs none: the time a
/// step then takes is the host's own work for it (autodiff, Burn's fusion, CubeCL's kernel
/// launches and wgpu's command encoding), on this machine's processor and at any batch size.
/// Kernels are WGSL, so the precision is f32 or f16. Nothing it computes is meaningful.
pub fn run_host_only<T: BackendTask>(task: T) -> anyhow::Result<T::Output> {
    #[cfg(feature = "wgpu")]
    return task.run::<burn::backend::Autodiff<burn::backend::Wgpu>>(gpu::noop_device()?);
    #[cfg(not(feature = "wgpu"))]
    {
        let _ = task;
        Err(not_built(BackendKind::Wgpu))
    }
}

/// Fails with a one-line reason when `kind` cannot run here: not compiled in, or its runtime does
/// not start (no driver, no device, no usable adapter). Call it before creating anything. On
/// Linux it first asks the dynamic loader for the NVIDIA driver (`libcuda.so.1`: `cuInit`, then
/// at least one device) or the Vulkan loader; then it starts the backend's runtime on the default
/// device (the one [`run`] uses) and runs one tiny kernel, with a panic inside the runtime caught
/// and its first message made the reason. The outcome is kept for the rest of the process.
pub fn require(kind: BackendKind) -> anyhow::Result<()> {
    match kind {
        BackendKind::Cpu => Ok(()),
        #[cfg(feature = "wgpu")]
        BackendKind::Wgpu => gpu::probe::<burn::backend::Wgpu>(kind),
        #[cfg(feature = "cuda")]
        BackendKind::Cuda => gpu::probe::<burn::backend::Cuda>(kind),
        #[allow(unreachable_patterns)]
        other => Err(not_built(other)),
    }
}

#[cfg(any(feature = "cuda", feature = "wgpu"))]
mod gpu {
    use std::panic::{self, AssertUnwindSafe};
    use std::sync::{Arc, Mutex, OnceLock};

    use burn::prelude::*;

    use super::BackendKind;

    /// The outcome of the first probe of each backend (the runtime starts once per process).
    static CUDA: OnceLock<Result<(), String>> = OnceLock::new();
    static WGPU: OnceLock<Result<(), String>> = OnceLock::new();

    /// A device as its driver names it, before its runtime starts.
    pub(super) struct Named {
        /// The model, e.g. `NVIDIA H100 80GB HBM3`.
        pub name: String,
        /// The model with its memory and driver.
        pub description: String,
    }

    /// The device a backend's runtime started on.
    pub(super) struct Device {
        /// Its name and driver, as the user would look them up.
        pub description: String,
        /// A CPU implementation of the GPU API (Mesa's lavapipe, SwiftShader, WARP): it runs the
        /// GPU kernels on the processor, far slower than the CPU backend's own kernels.
        pub software: bool,
    }

    pub(super) fn probe<B: Backend>(kind: BackendKind) -> anyhow::Result<()> {
        let cell = match kind {
            BackendKind::Cuda => &CUDA,
            _ => &WGPU,
        };
        let outcome = cell.get_or_init(|| {
            // The usual failures (no driver, no device, no Vulkan loader) are found without
            // starting the runtime, whose device thread would log its own panic as well.
            #[cfg(target_os = "linux")]
            match kind {
                #[cfg(feature = "cuda")]
                BackendKind::Cuda => super::linux::cuda_driver()?,
                #[cfg(feature = "wgpu")]
                BackendKind::Wgpu => super::linux::vulkan_loader()?,
                _ => {}
            }
            // CUDA's device can be named before its runtime starts, which reads the cache
            // settings once.
            #[cfg(all(target_os = "linux", feature = "cuda"))]
            let named = match kind {
                BackendKind::Cuda => super::linux::cuda_device(),
                _ => None,
            };
            #[cfg(not(all(target_os = "linux", feature = "cuda")))]
            let named: Option<Named> = None;
            let cache_device = match (kind, &named) {
                (BackendKind::Cuda, Some(named)) => named.name.as_str(),
                (BackendKind::Cuda, None) => "device-0",
                _ => "default-adapter",
            };
            let cache = crate::kernel_cache::configure(kind.name(), cache_device);
            let device = run_probe::<B>(kind, named)?;
            tracing::info!("--backend {}: {}", kind.name(), device.description);
            if let Some(dir) = cache {
                tracing::info!(
                    "--backend {}: kernels are compiled and tuned in the first steps of each new \
                     model size, batch and precision ({}); kept in {} (set {} to move it)",
                    kind.name(),
                    if crate::kernel_cache::is_filled(&dir) {
                        "fast for those cached there"
                    } else {
                        "this can take minutes: nothing is cached yet"
                    },
                    dir.display(),
                    crate::kernel_cache::ENV
                );
            }
            if device.software {
                tracing::warn!(
                    "--backend {} runs on a software adapter: the processor emulates the GPU, far \
                     slower than --backend cpu",
                    kind.name()
                );
            }
            Ok(())
        });
        match outcome {
            Ok(()) => Ok(()),
            Err(reason) => anyhow::bail!(
                "--backend {} cannot run on this machine: {reason} (use --backend cpu, or a machine with {})",
                kind.name(),
                match kind {
                    BackendKind::Cuda => "an NVIDIA GPU and driver",
                    _ => "a Vulkan, Metal or DX12 GPU",
                }
            ),
        }
    }

    /// Starts the runtime on the default device, names that device, and computes `2x + 1` on
    /// three values, with panics caught and their messages (from any thread: the runtimes start
    /// on their own device threads) recorded instead of printed.
    fn run_probe<B: Backend>(kind: BackendKind, named: Option<Named>) -> Result<Device, String> {
        let messages = Arc::new(Mutex::new(Vec::<String>::new()));
        let sink = Arc::clone(&messages);
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let text = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".into());
            if let Ok(mut all) = sink.lock() {
                all.push(text);
            }
        }));
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
            let found = start(kind, named);
            let device = B::Device::default();
            let x = Tensor::<B, 1>::from_floats([1.0, 2.0, 3.0], &device);
            (found, x.mul_scalar(2.0).add_scalar(1.0).try_into_data())
        }));
        panic::set_hook(previous);
        let (found, values) = match outcome {
            Ok((found, Ok(data))) => (
                found,
                data.convert::<f32>()
                    .to_vec::<f32>()
                    .map_err(|e| format!("{e:?}"))?,
            ),
            Ok((_, Err(err))) => return Err(format!("its first kernel failed: {err:?}")),
            Err(_) => {
                let all = messages.lock().map(|m| m.clone()).unwrap_or_default();
                // The first panic is the cause (the device thread's); later ones are its echo
                // (a closed channel) in the calling thread.
                let first = all.first().map_or("the runtime panicked", String::as_str);
                return Err(explain(kind, first));
            }
        };
        if values != [3.0, 5.0, 7.0] {
            return Err(format!(
                "a test kernel computed {values:?} instead of [3, 5, 7]"
            ));
        }
        Ok(found)
    }

    /// Starts the runtime on the default device and says what that device is (`named`, where
    /// the driver named it before).
    #[allow(unused_variables)]
    fn start(kind: BackendKind, named: Option<Named>) -> Device {
        match kind {
            // wgpu's adapter is chosen here, with the options Burn's default device uses, so that
            // its description can be read; the backend then runs on this runtime.
            #[cfg(feature = "wgpu")]
            BackendKind::Wgpu => {
                use burn::backend::wgpu::{graphics::AutoGraphicsApi, init_setup, WgpuDevice};
                let setup =
                    init_setup::<AutoGraphicsApi>(&WgpuDevice::default(), Default::default());
                let info = setup.adapter.get_info();
                Device {
                    description: format!(
                        "{}; {:?}; {} {}",
                        info.name, info.backend, info.driver, info.driver_info
                    ),
                    software: info.device_type == wgpu::DeviceType::Cpu,
                }
            }
            _ => Device {
                description: named.map_or_else(
                    || "device 0 (its name could not be read)".into(),
                    |named| named.description,
                ),
                software: false,
            },
        }
    }

    /// A device of wgpu's no-op backend (see [`super::run_host_only`]), started once per
    /// process; its autotune results are kept apart from a real adapter's.
    #[cfg(feature = "wgpu")]
    pub(super) fn noop_device() -> anyhow::Result<burn::backend::wgpu::WgpuDevice> {
        use anyhow::Context;
        use burn::backend::wgpu::{init_device, WgpuDevice, WgpuSetup};

        static NOOP: OnceLock<Result<WgpuDevice, String>> = OnceLock::new();
        let device = NOOP.get_or_init(|| {
            crate::kernel_cache::configure("wgpu", "noop");
            let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
                backends: wgpu::Backends::NOOP,
                backend_options: wgpu::BackendOptions {
                    noop: wgpu::NoopBackendOptions { enable: true },
                    ..Default::default()
                },
                ..wgpu::InstanceDescriptor::new_without_display_handle()
            });
            let adapter = pollster::block_on(instance.request_adapter(&Default::default()))
                .map_err(|e| format!("wgpu's no-op adapter: {e}"))?;
            let descriptor = wgpu::DeviceDescriptor {
                // Every feature but the experimental ones, which need an unsafe opt-in.
                required_features: adapter
                    .features()
                    .difference(wgpu::Features::all_experimental_mask()),
                required_limits: adapter.limits(),
                ..Default::default()
            };
            let (device, queue) = pollster::block_on(adapter.request_device(&descriptor))
                .map_err(|e| format!("wgpu's no-op device: {e}"))?;
            let setup = WgpuSetup {
                instance,
                adapter,
                device,
                queue,
                backend: wgpu::Backend::Noop,
            };
            Ok(init_device(setup, Default::default()))
        });
        device
            .clone()
            .map_err(anyhow::Error::msg)
            .context("starting wgpu's no-op device")
    }

    /// A short reason for a runtime's panic message.
    fn explain(kind: BackendKind, message: &str) -> String {
        let first_line = message.lines().next().unwrap_or_default();
        let short = |s: &str| -> String {
            let mut s = s.trim().to_string();
            if s.len() > 240 {
                let mut cut = 240;
                while !s.is_char_boundary(cut) {
                    cut -= 1;
                }
                s.truncate(cut);
                s.push('…');
            }
            s
        };
        if kind == BackendKind::Cuda {
            if message.contains("dynamically load the \"cuda\"") {
                return "no NVIDIA driver (libcuda.so could not be loaded)".into();
            }
            if message.contains("dynamically load the \"nvrtc\"") {
                return "CUDA's run-time compiler is missing (libnvrtc.so could not be loaded)"
                    .into();
            }
            if message.contains("CUDA_ERROR_NO_DEVICE") {
                return "the NVIDIA driver sees no CUDA device".into();
            }
            return format!("CUDA did not start: {}", short(first_line));
        }
        if message.contains("adapter") {
            return format!("no usable GPU adapter ({})", short(first_line));
        }
        format!("wgpu did not start: {}", short(first_line))
    }
}

/// Checks through the system's dynamic loader, before a runtime starts.
#[cfg(all(target_os = "linux", any(feature = "cuda", feature = "wgpu")))]
mod linux {
    use std::ffi::{c_char, c_int, c_void, CStr};

    extern "C" {
        fn dlopen(filename: *const c_char, flags: c_int) -> *mut c_void;
        #[cfg(feature = "cuda")]
        fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
    }
    const RTLD_NOW: c_int = 2;

    /// The first of `names` the dynamic loader opens (kept open: the runtime opens it again).
    fn open(names: &[&CStr]) -> Option<*mut c_void> {
        names
            .iter()
            // SAFETY: dlopen with a NUL-terminated name; a null result is handled.
            .map(|name| unsafe { dlopen(name.as_ptr(), RTLD_NOW) })
            .find(|handle| !handle.is_null())
    }

    /// The NVIDIA driver library loads, initialises and reports at least one device.
    #[cfg(feature = "cuda")]
    pub(super) fn cuda_driver() -> Result<(), String> {
        const CUDA_ERROR_NO_DEVICE: c_int = 100;
        let lib = open(&[c"libcuda.so.1", c"libcuda.so"])
            .ok_or("no NVIDIA driver (libcuda.so could not be loaded)")?;
        // SAFETY: the CUDA driver API's C signatures: CUresult cuInit(unsigned int) and
        // CUresult cuDeviceGetCount(int *); each symbol is checked for null before the call.
        unsafe {
            let init = dlsym(lib, c"cuInit".as_ptr());
            let count = dlsym(lib, c"cuDeviceGetCount".as_ptr());
            if init.is_null() || count.is_null() {
                return Err("the NVIDIA driver library lacks cuInit/cuDeviceGetCount".into());
            }
            let init: extern "C" fn(u32) -> c_int = std::mem::transmute(init);
            let count: extern "C" fn(*mut c_int) -> c_int = std::mem::transmute(count);
            match init(0) {
                0 => {}
                CUDA_ERROR_NO_DEVICE => return Err("the NVIDIA driver sees no CUDA device".into()),
                code => {
                    return Err(format!(
                        "the NVIDIA driver did not initialise (cuInit: error {code})"
                    ))
                }
            }
            let mut devices: c_int = 0;
            if count(&mut devices) != 0 || devices < 1 {
                return Err("the NVIDIA driver sees no CUDA device".into());
            }
        }
        Ok(())
    }

    /// Device 0 as the NVIDIA driver names it, with its memory and the driver's CUDA version
    /// (after [`cuda_driver`] has initialised the driver).
    #[cfg(feature = "cuda")]
    pub(super) fn cuda_device() -> Option<super::gpu::Named> {
        let lib = open(&[c"libcuda.so.1", c"libcuda.so"])?;
        // SAFETY: the CUDA driver API's C signatures: CUresult cuDeviceGet(CUdevice *, int),
        // cuDeviceGetName(char *, int, CUdevice), cuDeviceTotalMem_v2(size_t *, CUdevice) and
        // cuDriverGetVersion(int *), CUdevice being an int; each symbol is checked for null, the
        // name buffer's length is passed and its last byte set to NUL before it is read.
        unsafe {
            let symbols = [
                c"cuDeviceGet",
                c"cuDeviceGetName",
                c"cuDeviceTotalMem_v2",
                c"cuDriverGetVersion",
            ]
            .map(|name| dlsym(lib, name.as_ptr()));
            if symbols.iter().any(|s| s.is_null()) {
                return None;
            }
            let get: extern "C" fn(*mut c_int, c_int) -> c_int = std::mem::transmute(symbols[0]);
            let get_name: extern "C" fn(*mut c_char, c_int, c_int) -> c_int =
                std::mem::transmute(symbols[1]);
            let total_mem: extern "C" fn(*mut usize, c_int) -> c_int =
                std::mem::transmute(symbols[2]);
            let version: extern "C" fn(*mut c_int) -> c_int = std::mem::transmute(symbols[3]);
            let mut device: c_int = 0;
            if get(&mut device, 0) != 0 {
                return None;
            }
            let mut name = [0 as c_char; 256];
            if get_name(name.as_mut_ptr(), name.len() as c_int, device) != 0 {
                return None;
            }
            name[name.len() - 1] = 0;
            let name = CStr::from_ptr(name.as_ptr()).to_string_lossy().into_owned();
            let mut bytes = 0usize;
            let mut cuda: c_int = 0;
            let mut description = name.clone();
            if total_mem(&mut bytes, device) == 0 {
                description += &format!("; {:.1} GiB", bytes as f64 / (1u64 << 30) as f64);
            }
            if version(&mut cuda) == 0 {
                description += &format!("; CUDA {}.{} driver", cuda / 1000, cuda % 1000 / 10);
            }
            Some(super::gpu::Named { name, description })
        }
    }

    /// wgpu's Linux backend is Vulkan: its loader must be there.
    #[cfg(feature = "wgpu")]
    pub(super) fn vulkan_loader() -> Result<(), String> {
        open(&[c"libvulkan.so.1", c"libvulkan.so"])
            .map(|_| ())
            .ok_or_else(|| "no Vulkan loader (libvulkan.so.1 could not be loaded)".into())
    }
}
