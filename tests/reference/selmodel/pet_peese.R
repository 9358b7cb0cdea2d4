# Reference figures for bayes_se.frequentist.petpeese (PET, PEESE): metafor 3.8-1 meta-regressions
# on sqrt(vi) (PET) and vi (PEESE) (Stanley & Doucouliagos 2014), Fisher-scoring threshold 1e-12.
# Run in this folder:  Rscript pet_peese.R   (writes pet_peese.json)
suppressMessages(library(metafor))
library(jsonlite)
hack <- read.csv("../data/dat.hackshaw1998.csv")
mpsy <- read.csv("../../../data/metapsy_depression_selfguided.csv")
data <- list(hackshaw1998 = hack, metapsy = mpsy)
num <- function(x) { x <- as.numeric(x); x[is.na(x)] <- NA; x }
f <- function(r) list(beta = num(r$beta), se = num(r$se), zval = num(r$zval), pval = num(r$pval),
                      ci_lb = num(r$ci.lb), ci_ub = num(r$ci.ub), tau2 = num(r$tau2))
ctrl <- list(threshold = 1e-12, maxiter = 1000)
pp <- list()
for (nm in names(data)) {
  dat <- data[[nm]]
  for (method in c("EE", "REML", "DL")) {
    for (test in c("z", "knha")) {
      pet <- rma(yi, vi, mods = ~ sqrt(vi), data = dat, method = method, test = test, control = ctrl)
      peese <- rma(yi, vi, mods = ~ vi, data = dat, method = method, test = test, control = ctrl)
      pp[[paste(nm, method, test, sep = "_")]] <- list(data = nm, method = method, test = test, pet = f(pet), peese = f(peese))
    }
  }
}
writeLines(toJSON(pp, auto_unbox = TRUE, digits = NA, na = "null", pretty = TRUE), "pet_peese.json")
