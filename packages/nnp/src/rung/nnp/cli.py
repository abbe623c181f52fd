"""Command line interface: `nnp`."""

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rung-nnp")
def main():
    """NNP rung: fast inference for ANI-style neural network potentials."""


if __name__ == "__main__":
    main()
