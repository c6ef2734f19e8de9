"""The tiny real training that the service's tests run: a trial takes about a second on a CPU."""

TINY_TRAIN = {
    "model": "resnet20",
    "data": "fashion-mnist",
    "subset": 600,
    "image_size": 16,
    "epochs": 2,
    "batch_size": 64,
}
