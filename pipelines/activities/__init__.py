"""One activity model for every source: sessions, samples and interval bounds (no Dagster).

``from_garmin`` and ``from_fit`` map their bronze tables onto it; ``build`` unions the sources
and measures the intervals with :mod:`pipelines.intervals`.
"""
