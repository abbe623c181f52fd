"""Command line interface: `nnp-md`."""

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rung-md")
def main():
    """MD rung: classical and ring-polymer molecular dynamics over rung potentials."""


if __name__ == "__main__":
    main()
