"""Native Sparse Attention: a plain PyTorch reference and Triton kernels.

Imports only torch and triton.
"""
