"""The layers P-TAME composes; `kp.layers` holds the ones users build with.

`kp.Backbone`, `kp.AuxiliaryExtractor` and `kp.MaskDecoder` are at the top
level; `ChannelAdapter` hands a network the channels it reads from images
of another channel count (grayscale, multispectral).
"""

from keras_ptame.layers.channel_adapter import ChannelAdapter

__all__ = ["ChannelAdapter"]
