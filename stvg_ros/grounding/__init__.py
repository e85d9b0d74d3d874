"""The method: frames + query -> tube (DSTH sub-queries, LRA, relevance maps, the spatial and temporal
choices) and what a grounding returns.  Model-family specifics stay behind :mod:`stvg_ros.adapters`."""
