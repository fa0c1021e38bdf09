"""Manifest rows -> pixels -> record bytes: decode, resize, augment, encode."""
