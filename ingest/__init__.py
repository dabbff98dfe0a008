"""Turn a repository, a file or a PDF into a cited context that fits a token budget.

Never imports torch.
"""
