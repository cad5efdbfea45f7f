"""Knowledge-critical subnetworks (Bayazit et al., arXiv 2310.03084): learned masks whose removal
erases a set of knowledge-graph facts while keeping other facts and general language modelling."""
