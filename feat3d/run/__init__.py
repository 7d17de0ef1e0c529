"""The run layer: videos in, network outputs out, for every command that runs a network.

- :mod:`.messages`: what the decoding side and the batching side pass each other.
- :mod:`.events`: progress hooks a caller overrides (the CLI draws its progress bar with them).
- :mod:`.stream`: one video's clips, decoded and timed (``--timeout``).
- :mod:`.workers`: decoding processes that survive hostile videos.
- :mod:`.pipeline`: clips → batches (spanning videos) → the network → one result per video.
- :mod:`.two_stream`: the same for backbones whose spec takes optical flow (ST-ResNet).
- :mod:`.extract`, :mod:`.classify`: the ``extract`` and ``classify`` runs.
- :mod:`.distribute`: a run split over shards, ``--devices`` processes or torchrun ranks.

The package imports nothing itself: import the module you need (``feat3d.extract`` and
``feat3d.classify`` are the public entry points).
"""
