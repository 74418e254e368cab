"""`make bench`: performance figures as ratios against anchors measured in the same run."""
