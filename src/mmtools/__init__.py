"""mmtools: small composable tools for image–text retrieval and tagging, Vietnamese first.

The library layer (records, models, embed, index, search, text) is usable from Python without the CLI:

    from mmtools.models import load_encoder
    from mmtools.embed import embed_texts
"""

__version__ = "0.1.0"
