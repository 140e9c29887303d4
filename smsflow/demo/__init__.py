"""The demo: a simulated shop driving the whole pipeline on a compressed clock."""
