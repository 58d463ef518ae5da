"""dft_operators: neural operators for electronic-structure maps."""
