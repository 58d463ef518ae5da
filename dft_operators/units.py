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
