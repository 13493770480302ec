"""Dreamer's networks: encoder, decoders, RSSM, heads and distributions."""

from networks.common import get_act
from networks.conv import ConvDecoder, ConvEncoder
from networks.distributions import OneHotDist, TanhBijector, TanhNormal
from networks.heads import ActionDecoder, DenseDecoder, DenseEncoder
from networks.rssm import RSSM
from networks.weights import export_weights, load_weights
