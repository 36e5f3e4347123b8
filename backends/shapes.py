"""The output size of a window (convolution or pooling) sliding over an image."""


def out_length(size, kernel, stride, pad):
    """Windows of length ``kernel`` that fit along an axis of ``size`` with this stride and zero padding."""
    return (size + 2 * pad - kernel) // stride + 1


def out_size(H, W, KH, KW, stride, pad):
    """``(OH, OW)`` of a KH x KW window sliding over an H x W image with this stride and zero padding."""
    return out_length(H, KH, stride[0], pad[0]), out_length(W, KW, stride[1], pad[1])


def transposed_length(size, kernel, stride, pad, output_pad):
    """Output length of a transposed convolution along an axis: ``(size - 1) * stride - 2 * pad + kernel +
    output_pad``, the length that a convolution with this kernel, stride and pad maps back to ``size``."""
    return (size - 1) * stride - 2 * pad + kernel + output_pad
