"""The explanation engine: LRP/CRP (closed form and zennit reference) and captum methods."""
