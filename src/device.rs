//! Device selection: `--device auto|cpu|cuda`.
//!
//! The linker drops libtorch_cuda.so as unneeded (no symbol of it is referenced directly), so
//! CUDA support is loaded at run time: dlopen it (from the libtorch the binary was built with,
//! then from the loader's search path, e.g. LD_LIBRARY_PATH), which registers torch's CUDA
//! hooks. CPU runs never pay for loading the CUDA libraries.

use anyhow::{bail, Result};
use tch::Device;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceChoice {
    /// CUDA if an NVIDIA device is visible, else CPU.
    Auto,
    Cpu,
    Cuda,
}

fn dlopen(path: &str) -> Result<(), String> {
    let c = std::ffi::CString::new(path).unwrap();
    // SAFETY: dlopen/dlerror are thread-safe C calls; the handle is intentionally leaked so the
    // library stays loaded for the life of the process.
    unsafe {
        let handle = libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL);
        if handle.is_null() {
            let err = libc::dlerror();
            let msg = if err.is_null() {
                "unknown error".to_string()
            } else {
                std::ffi::CStr::from_ptr(err).to_string_lossy().to_string()
            };
            return Err(msg);
        }
    }
    Ok(())
}

/// Load libtorch_cuda.so; returns why it could not be loaded.
fn load_cuda() -> Result<(), String> {
    let built_with = env!("ALIGNLAB_LIBTORCH_LIB");
    let mut errors = Vec::new();
    let candidates = [format!("{built_with}/libtorch_cuda.so"), "libtorch_cuda.so".to_string()];
    for c in candidates.iter().filter(|c| !c.starts_with('/') || std::path::Path::new(c).exists()) {
        match dlopen(c) {
            Ok(()) => return Ok(()),
            Err(e) => errors.push(e),
        }
    }
    Err(if errors.is_empty() { "libtorch_cuda.so not found".into() } else { errors.join("; ") })
}

pub fn resolve(choice: DeviceChoice) -> Result<Device> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Auto => {
            let visible = std::path::Path::new("/dev/nvidia0").exists()
                || std::path::Path::new("/dev/nvidiactl").exists();
            if visible && load_cuda().is_ok() && tch::Cuda::is_available() {
                Ok(Device::Cuda(0))
            } else {
                Ok(Device::Cpu)
            }
        }
        DeviceChoice::Cuda => {
            if let Err(e) = load_cuda() {
                bail!("--device cuda: this libtorch has no usable CUDA support ({e}); fix: use --device cpu, or point LIBTORCH at a CUDA-enabled libtorch 2.11.0");
            }
            if !tch::Cuda::is_available() {
                bail!("--device cuda: no CUDA device is available (no NVIDIA GPU or driver found); fix: use --device cpu or run on a GPU machine");
            }
            Ok(Device::Cuda(0))
        }
    }
}

impl std::fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DeviceChoice::Auto => "auto",
            DeviceChoice::Cpu => "cpu",
            DeviceChoice::Cuda => "cuda",
        })
    }
}

/// The device `setup` chose, for what is built before it (a dataset world's judge, loaded when
/// the scenario is read, moves there when it first scores).
static RUN_DEVICE: std::sync::Mutex<Option<Device>> = std::sync::Mutex::new(None);

/// The run's device: `setup`'s choice, the CPU before it.
pub fn current() -> Device {
    RUN_DEVICE.lock().unwrap_or_else(|e| e.into_inner()).unwrap_or(Device::Cpu)
}

/// Resolve `choice` and give torch `threads` intra-op threads (default: all cores) and one
/// inter-op thread.
pub fn setup(choice: DeviceChoice, threads: Option<usize>) -> Result<Device> {
    if let Some(t) = threads {
        anyhow::ensure!(
            (1..=1024).contains(&t),
            "--threads {t} is not a thread count; fix: pass --threads 1 or more (or leave it out: all cores)"
        );
    }
    let dev = resolve(choice)?;
    *RUN_DEVICE.lock().unwrap_or_else(|e| e.into_inner()) = Some(dev);
    let threads = threads
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    tch::set_num_threads(threads as i32);
    tch::set_num_interop_threads(1);
    // The data-parallel CPU work outside libtorch (gold scoring, the importance-sampling
    // frontier, reports over folders) runs on as many threads as torch gets, never beside a
    // torch op, so the two never oversubscribe the cores. RAYON_NUM_THREADS, if set, wins.
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let _ = rayon::ThreadPoolBuilder::new().num_threads(threads).build_global();
    }
    Ok(dev)
}
