"""The six feature-prediction procedures (seed 003) by name, without torch: the config checks, the sweep's checks
and the study tables read them before (or without) any training. The LightningModule that runs them is
``PERCEPTUAL_AUTOENCODER``."""

PERCEPTUAL_AUTOENCODER = "lightning_modules.perceptual_autoencoder.PerceptualAutoencoderModule"

PROCEDURES = {  # name: (encoder input, decoder output, loss)
    "I-I-PW": ("image", "image", "pixel"),
    "I-I-PS": ("image", "image", "perceptual"),
    "F-I-PW": ("features", "image", "pixel"),
    "F-I-PS": ("features", "image", "perceptual"),
    "I-F-FP": ("image", "features", "feature"),
    "F-F-FP": ("features", "features", "feature"),
}


def needs_loss_network(procedure: str) -> bool:
    """Every procedure but I-I-PW runs the loss network (AlexNet features as input, loss or target)."""
    encoder_input, _, loss = PROCEDURES[procedure]
    return (encoder_input, loss) != ("image", "pixel")
