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
    let candidates = [
        format!("{built_with}/libtorch_cuda.so"),
        "libtorch_cuda.so".to_string(),
    ];
    for c in candidates
        .iter()
        .filter(|c| !c.starts_with('/') || std::path::Path::new(c).exists())
    {
        match dlopen(c) {
            Ok(()) => return Ok(()),
            Err(e) => errors.push(e),
        }
    }
    Err(if errors.is_empty() {
        "libtorch_cuda.so not found".into()
    } else {
        errors.join("; ")
    })
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
