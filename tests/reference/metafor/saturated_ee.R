# A saturated common-effect meta-regression (k = p = 2): metafor 3.8-1 fits it (QE(df = 0) = 0,
# p = 1, I2 = 0, H2 = 1) where a random-effects model is refused. Run in this folder:
#   Rscript saturated_ee.R  -> saturated_ee.json
library(metafor)
library(jsonlite)
yi <- c(0.1, 0.3); vi <- c(0.01, 0.02); x <- c(1, 2)
r <- rma(yi, vi, mods = ~ x, method = "EE")
fs <- fitstats(r)
out <- list(beta = as.vector(r$beta), se = as.vector(r$se), QE = r$QE, QEp = r$QEp, QM = r$QM, QMp = r$QMp,
            I2 = r$I2, H2 = r$H2, ll = fs[1, 1], AIC = fs[3, 1], BIC = fs[4, 1], AICc = fs[5, 1])
writeLines(toJSON(out, digits = I(15), auto_unbox = TRUE, pretty = TRUE), "saturated_ee.json")
