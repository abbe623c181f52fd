"""Command line interface: `dft-gpu`."""

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rung-dft-gpu")
def main():
    """DFT rung: PySCF with a density-fitted J/K engine (CPU/GPU), energies and forces for many conformations."""


if __name__ == "__main__":
    main()
