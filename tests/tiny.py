"""The tiny search space the end-to-end tests share: 8x8 inputs, two stages, a few members."""

SPACE = """
activation: relu
resolution: 8
stem: {channels: 8, kernel: 3, stride: 1}
head: 32
defaults: {op: [conv, sepconv, mbconv3], kernel: [3], se: [0.0], skip: [identity]}
stages:
  - {stride: 2, channels: [8, 12], layers: [1]}
  - {stride: 2, channels: [16], layers: [1, 2]}
"""
# Twice the members: kernel 3 or 5 in every stage.
SPACE_K35 = SPACE.replace("kernel: [3]", "kernel: [3, 5]")
