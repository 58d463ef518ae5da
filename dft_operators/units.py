"""Physical constants and unit conversions (atomic units inside the package).

Source: CODATA 2018 recommended values, as tabulated by NIST
(https://physics.nist.gov/cuu/Constants/), the same values PySCF uses in ``pyscf.data.nist``.
"""

BOHR_PER_ANGSTROM = 1.0 / 0.529177210903  # a0 = 0.529177210903 Angstrom
ANGSTROM_PER_BOHR = 0.529177210903
HARTREE_TO_EV = 27.211386245988
HARTREE_TO_KCAL_PER_MOL = 627.5094740631  # Eh * N_A / 4184 J
KCAL_PER_MOL_TO_HARTREE = 1.0 / HARTREE_TO_KCAL_PER_MOL
DEBYE_PER_AU = 2.541746473  # e * a0 in Debye
AU_TIME_FS = 0.02418884326585747  # hbar / Eh in femtoseconds
HARTREE_TO_CM1 = 219474.6313632  # Eh / (h c) in cm^-1
AMU_TO_ME = 1822.888486209  # unified atomic mass unit in electron masses

# SI values (CODATA 2018, exact where the 2019 SI fixes them) for the IR intensity conversion below.
AVOGADRO = 6.02214076e23  # N_A in 1/mol (exact)
ELEMENTARY_CHARGE_C = 1.602176634e-19  # e in Coulomb (exact)
SPEED_OF_LIGHT_M_S = 299792458.0  # c in m/s (exact)
VACUUM_PERMITTIVITY_F_M = 8.8541878128e-12  # epsilon_0 in F/m
AMU_KG = 1.66053906660e-27  # unified atomic mass unit in kg
# Integrated IR absorption A = N_A / (12 epsilon_0 c^2) |dmu/dQ|^2 (SI; N_A pi / (3 c^2) |dmu/dQ|^2 in
# Gaussian units) for |dmu/dQ| = 1 e / sqrt(u), i.e. a dipole derivative in e Bohr per (sqrt(u) Bohr) of
# mass-weighted normal coordinate; Bohr cancels. N_A e^2 / (12 epsilon_0 c^2 u) = 974880 m/mol.
IR_INTENSITY_KM_PER_MOL = (AVOGADRO * ELEMENTARY_CHARGE_C ** 2
                           / (12.0 * VACUUM_PERMITTIVITY_F_M * SPEED_OF_LIGHT_M_S ** 2 * AMU_KG) / 1e3)
BOLTZMANN_HARTREE_PER_K = 3.1668115634556e-6  # k_B / Eh in Hartree per Kelvin (CODATA 2018)
