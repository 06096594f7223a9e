"""TrakSense benchmarks: `python -m bench <name> [args]` runs bench.<name>.main(argv)."""
