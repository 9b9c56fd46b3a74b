"""The library every stage uses: layers, data, configs, trainer, sampling, checkpoints, plots."""
