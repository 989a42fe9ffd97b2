"""Measuring tools, apart from the package they measure.

``classic`` is the pytorch/examples DCGAN loop (the reference), ``baselines`` trains it as the classic
and newcomer recipes, ``quality`` compares sample quality for equal time (``dcgan quality``) and
``speed`` times the training step and sampling (``dcgan bench``).
"""
