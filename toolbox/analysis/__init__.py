"""Pure tensor algorithms on model outputs: statistics, saliency, dreams, unit pictures."""
