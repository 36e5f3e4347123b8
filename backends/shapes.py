"""The output size of a window (convolution or pooling) sliding over an image."""


def out_length(size, kernel, stride, pad):
    """Windows of length ``kernel`` that fit along an axis of ``size`` with this stride and zero padding."""
    return (size + 2 * pad - kernel) // stride + 1


def out_size(H, W, KH, KW, stride, pad):
    """``(OH, OW)`` of a KH x KW window sliding over an H x W image with this stride and zero padding."""
    return out_length(H, KH, stride[0], pad[0]), out_length(W, KW, stride[1], pad[1])
