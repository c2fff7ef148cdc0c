"""strictaws: moto behind a thin layer that behaves like AWS where moto is more lenient.

See emulator/README.md for what is strict, the control API, and what is not modelled.
"""
