"""Neutral helpers for the whole package: input checks, atomic files, image
files, host-side map utilities, ImageNet statistics.

The bottom of the house: these modules import nothing of `keras_ptame` but
each other, and build no Keras model.
"""
