"""What the optimisation engine (analysis/optimise) maximises: small callables on captured activations.

dream.py (layer terms summed over positions), unit.py (one channel or neuron), inversion.py
(Mahendran & Vedaldi's pre-image loss), style.py (Gatys et al.'s Gram, content and TV losses).
"""
