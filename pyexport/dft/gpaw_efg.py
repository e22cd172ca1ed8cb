"""Electric field gradients at the nuclei from a converged GPAW plane-wave calculation: the PAW
method of Petrilli, Blöchl, Blaha and Schwarz, Phys. Rev. B 57, 14690 (1998) (what VASP's
``LEFG`` computes). GPAW itself has no EFG code; this module reads its density and potential.

    from gpaw import GPAW, PW
    atoms.calc = GPAW(mode=PW(500), xc="PBE", symmetry="off")
    atoms.get_potential_energy()
    V = efg_tensors(atoms.calc)        # (N, 3, 3) V/Å², symmetric, traceless

Conventions (those of :mod:`pyexport.nmr`): ``V_ab = ∂_a ∂_b φ`` with φ the electrostatic
potential of all charges except the atom's own nucleus; electrons count negative, so a positive
point charge on the z axis gives V_zz > 0.

Method. PAW writes the total charge (electron sign: electrons positive, nuclei negative) as

    ρ = ρ̃ + Σ_a (ρ¹_a − ρ̃¹_a),   ρ̃ = ñ + Σ_aL Q_aL ĝ_aL,

with ñ the pseudo valence density plus pseudo core, ĝ_aL(r) = g_l(r) Y_L(r̂) the Gaussian
compensation charges whose moments Q_aL carry every atom's nucleus, core and the multipoles of
its augmentation, and ρ¹_a − ρ̃¹_a = n¹_a − ñ¹_a − Σ_L Q_aL ĝ_aL inside atom a's sphere (no
multipole moment up to L = 2, so no field outside it). Hence two parts:

1. Smooth part (:func:`smooth_efg_au`): GPAW's Hartree potential ṽ_H of ρ̃, held in plane waves
   on the fine electrostatic cutoff (8 × the wave-function cutoff) as ṽ_H(r) = Σ_G c_G e^{iG·r}.
   With φ = −ṽ_H, ∂_a∂_b φ(R) = Σ_G G_a G_b c_G e^{iG·R}, exact for the plane waves GPAW has;
   the trace (4π ρ̃(R), a contact term) is removed.
2. One-centre part (:func:`one_centre_efg_au`): the L = 2 radial components of
   Δn_a = n¹_a − ñ¹_a − Q_aL ĝ_aL, from the density matrix D_ij and partial waves φ_j, φ̃_j with
   Gaunt coefficients. A charge density ρ_2m(r) Y_2m(r̂) has, near the origin, the potential
   φ = (4π/5) r² Y_2m(r̂) ∫ ρ_2m(r)/r dr, and r² Y_2m is a quadratic polynomial whose second
   derivatives are constants (:data:`D2_R2Y2`). The frozen core and the nucleus are spherical and
   give nothing. With the electron sign, V_ab = −(4π/5) Σ_m ∂_a∂_b(r²Y_2m) ∫ Δn_2m(r)/r dr.

Atomic units (E_h/(e a₀²)) are converted with :data:`pyexport.nmr.V_PER_A2_PER_EFG_AU`.
Serial GPAW only (no domain or band parallelisation of the arrays read here); spin-polarised
densities are summed.
"""
from math import pi

import numpy as np

from ..nmr import V_PER_A2_PER_EFG_AU

__all__ = ["D2_R2Y2", "efg_tensors", "efg_tensors_au", "smooth_efg_au", "one_centre_efg_au",
           "radial_l2_components", "traceless"]

#: ∂_a ∂_b (r² Y_2m) for GPAW's real spherical harmonics of l = 2 in GPAW's order
#: (L = 4..8: xy, yz, 3z² − r², xz, x² − y²; orthonormal on the sphere). r² Y_2m = N_m p_m(x, y, z)
#: with N_m = √(15/4π), √(15/4π), √(5/16π), √(15/4π), √(15/16π); shape (5, 3, 3).
D2_R2Y2 = np.array([
    np.sqrt(15 / (4 * pi)) * np.array([[0, 1, 0], [1, 0, 0], [0, 0, 0]]),
    np.sqrt(15 / (4 * pi)) * np.array([[0, 0, 0], [0, 0, 1], [0, 1, 0]]),
    np.sqrt(5 / (16 * pi)) * np.array([[-2, 0, 0], [0, -2, 0], [0, 0, 4]]),
    np.sqrt(15 / (4 * pi)) * np.array([[0, 0, 1], [0, 0, 0], [1, 0, 0]]),
    np.sqrt(15 / (16 * pi)) * np.array([[2, 0, 0], [0, -2, 0], [0, 0, 0]]),
], dtype=float)


def traceless(V):
    """(..., 3, 3) tensors made symmetric, (V + Vᵀ)/2, with the trace removed."""
    V = 0.5 * (V + np.swapaxes(V, -1, -2))
    return V - np.trace(V, axis1=-2, axis2=-1)[..., None, None] / 3 * np.eye(3)


def efg_tensors(calc):
    """(N, 3, 3) EFG tensors in V/Å² at every nucleus of a converged GPAW calculation."""
    return efg_tensors_au(calc) * V_PER_A2_PER_EFG_AU


def efg_tensors_au(calc):
    """(N, 3, 3) EFG tensors in atomic units (E_h/(e a₀²)): smooth plus one-centre parts."""
    dft = _converged_dft(calc)
    density = dft.density
    V = smooth_efg_au(dft.potential.vHt_x, dft.relpos_ac)
    Q_aL = density.calculate_compensation_charge_coefficients()
    for a, D_sii in density.D_asii.items():
        D_ii = np.asarray(D_sii[:density.ndensities].real).sum(axis=0)
        V[a] += one_centre_efg_au(D_ii, dft.setups[a], np.asarray(Q_aL[a]))
    return V


def smooth_efg_au(vHt, relpos_ac):
    """(N, 3, 3) ∂_a∂_b of −ṽ_H at the fractional positions ``relpos_ac`` (N, 3), traceless,
    atomic units. ``vHt``: GPAW's Hartree potential of the pseudo density plus compensation
    charges as a plane-wave array (``PWArray``, coefficients c_G of Σ_G c_G e^{iG·r}, Hartree);
    for a real-valued plane-wave set only half of the G are stored and each stands for ±G."""
    from gpaw.core import PWArray

    if not isinstance(vHt, PWArray):
        raise TypeError(f"the EFG needs the Hartree potential in plane waves (GPAW mode=PW), "
                        f"got {type(vHt).__name__}")
    desc = vHt.desc
    if desc.comm.size != 1:
        raise NotImplementedError("EFG from a domain-decomposed GPAW run: run GPAW serially")
    c_G = np.asarray(vHt.data)
    G_Gv = np.asarray(desc.reciprocal_vectors())
    weight_G = np.ones(len(c_G))
    if np.issubdtype(desc.dtype, np.floating):
        weight_G[:] = 2.0                       # G and −G: c_{−G} = c_G*
        weight_G[np.all(G_Gv == 0, axis=1)] = 1.0
    GG_Gvv = G_Gv[:, :, None] * G_Gv[:, None, :]
    R_av = np.asarray(relpos_ac) @ desc.cell_cv
    V = np.empty((len(R_av), 3, 3))
    for a, R_v in enumerate(R_av):
        f_G = weight_G * c_G * np.exp(1j * (G_Gv @ R_v))
        V[a] = np.einsum("G,Gvw->vw", f_G, GG_Gvv).real
    return traceless(V)


def radial_l2_components(D_ii, setup):
    """(5, ng) L = 2 radial components of n¹ − ñ¹ (electrons, bohr⁻³) on ``setup.rgd`` from
    the atom's density matrix ``D_ii`` (partial waves in GPAW's order: j, then m)."""
    from gpaw.sphere.gaunt import gaunt

    l_j = list(setup.l_j)
    G_LLm = gaunt(max(max(l_j), 1))[:, :, 4:9]
    phi_jg = np.asarray(setup.data.phi_jg)
    phit_jg = np.asarray(setup.data.phit_jg)
    start_j = np.cumsum([0] + [2 * l + 1 for l in l_j])
    n_mg = np.zeros((5, phi_jg.shape[1]))
    for j1, l1 in enumerate(l_j):
        for j2, l2 in enumerate(l_j):
            block = D_ii[start_j[j1]:start_j[j1 + 1], start_j[j2]:start_j[j2 + 1]]
            D_m = np.einsum("ab,abm->m", block, G_LLm[l1**2:(l1 + 1)**2, l2**2:(l2 + 1)**2])
            n_mg += D_m[:, None] * (phi_jg[j1] * phi_jg[j2] - phit_jg[j1] * phit_jg[j2])
    return n_mg


def one_centre_efg_au(D_ii, setup, Q_L):
    """(3, 3) one-centre EFG of one atom, atomic units: the L = 2 part of
    n¹ − ñ¹ − Q_L ĝ_L in its augmentation sphere (module docstring). ``D_ii``: the atom's
    density matrix summed over spins; ``Q_L``: its compensation-charge moments (L = 0..8)."""
    rgd = setup.rgd
    r_g, dr_g = np.asarray(rgd.r_g), np.asarray(rgd.dr_g)
    n_mg = radial_l2_components(D_ii, setup)
    g2_g = np.zeros(len(r_g))
    g2 = np.asarray(setup.g_lg[2])
    g2_g[:len(g2)] = g2
    n_mg -= np.asarray(Q_L[4:9])[:, None] * g2_g
    # ∫ Δn_2m(r) r² / r³ dr; the integrand goes as r at the origin
    integral_m = n_mg[:, 1:] @ (dr_g[1:] / r_g[1:])
    return traceless(-(4 * pi / 5) * np.einsum("m,mvw->vw", integral_m, D2_R2Y2))


def _converged_dft(calc):
    """The ``DFT`` object of a GPAW (new code) ASE calculator that has a converged density and
    its Hartree potential; clear errors otherwise."""
    dft = getattr(calc, "dft", None)
    if dft is None:
        raise TypeError(f"expected a GPAW calculator of the new code (gpaw.GPAW), got "
                        f"{type(calc).__name__}")
    if dft.potential.vHt_x is None:
        raise RuntimeError("the GPAW calculation has no Hartree potential: run "
                           "atoms.get_potential_energy() first")
    return dft
