"""Command line interface: `qmc`."""

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rung-qmc")
def main():
    """QMC rung: VMC/DMC with Slater-Jastrow trial functions and ccECPs."""


if __name__ == "__main__":
    main()
