"""Command line interface: `sci`."""

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rung-sci")
def main():
    """Selected CI rung: CIPSI with bit-string determinants, EN-PT2, Davidson-Liu."""


if __name__ == "__main__":
    main()
