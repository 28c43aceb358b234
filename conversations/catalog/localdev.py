"""What `make run` registers for offline development: the development upstream and its models."""

DEV_PROVIDER_NAME = "dev-upstream"

# (upstream id, API kind, input price, output price in USD per 1M tokens): made-up prices, so costs show.
DEV_MODELS = [
    ("dev-chat", "chat", "0.50", "1.50"),
    ("dev-reasoner", "chat", "1.00", "4.00"),
    ("dev-complete", "completions", "0.20", "0.60"),
    ("dev-vision", "chat", "0.50", "1.50"),
]
DEV_VISION_MODELS = {"dev-vision"}  # registered with `vision = true`: it describes the images and texts it gets
